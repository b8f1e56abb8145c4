"""The assistant's language resources: the ontology and catalogues (`ontology`), CMUdict phonetics (`phonetics`)."""
