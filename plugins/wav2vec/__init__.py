"""Built-in plugin family `wav2vec`: wav2vec 1.0 and vq-wav2vec."""

W2V_PLUGIN_API = "1.0"
