"""Self-learning conversational AI on simulated dialogue logs.

One subpackage per concern (see `selflearn/README.md`): `language` and
`data` (the ontology, the log schema, readers, splits), `sim` (the simulator,
its annotators and judge), `signals` (what models read from logs),
`understanding` (failure-point isolation, label generation), `rewriting`
(rephrase detection, precomputed and online rewriting), `teaching`
(teachable preferences), `evaluation`, and the task runners (`tasks`) of the
`selflearn.main` binary.  The core never imports `sim`; this package may
import `common` and `schedulers`, never another method package.
"""
