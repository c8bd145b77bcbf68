"""The model store: import, pull, verify and inspect GGUF files (content-addressed blobs
plus small manifests under HAVEN_HOME/models), and the test-model factory."""
