"""The annotation database: its tables (:mod:`.models`), connection and migrations (:mod:`.engine`),
what the pipeline reads from it (:mod:`.queries`), and how human work overrides the AI's
(:mod:`.corrections`). The review workbench (:mod:`qwen_dataset.workbench`) writes here."""
