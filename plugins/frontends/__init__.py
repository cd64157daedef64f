"""Built-in plugin family `frontends`."""

W2V_PLUGIN_API = "1.0"
