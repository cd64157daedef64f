"""Built-in plugin family `data`."""

W2V_PLUGIN_API = "1.0"
