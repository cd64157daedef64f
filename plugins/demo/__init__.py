"""Built-in plugin family `demo`."""

W2V_PLUGIN_API = "1.0"
