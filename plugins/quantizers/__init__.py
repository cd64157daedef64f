"""Built-in plugin family `quantizers`."""

W2V_PLUGIN_API = "1.0"
