"""Built-in plugin family `ctc`."""

W2V_PLUGIN_API = "1.0"
