"""The `table` modality kind."""
