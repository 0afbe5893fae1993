"""The `dicom` modality kind."""
