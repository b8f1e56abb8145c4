"""What models read from logs, observations only.

`sessions` (friction and reformulation sessions), `features` (the dialogue
model's input and label arrays), `text_features` (frozen sentence
embeddings, cached).
"""
