"""The `waveform` modality kind."""
