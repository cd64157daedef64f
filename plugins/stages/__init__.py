"""Built-in plugin family `stages`."""

W2V_PLUGIN_API = "1.0"
