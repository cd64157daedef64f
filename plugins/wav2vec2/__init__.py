"""Built-in plugin family `wav2vec2`."""

W2V_PLUGIN_API = "1.0"
