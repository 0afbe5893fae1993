"""The `ehr` modality kind."""
