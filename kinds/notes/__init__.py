"""The `notes` modality kind."""
