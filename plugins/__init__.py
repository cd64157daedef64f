"""Built-in plugin families of w2v, each loaded through the `w2v` entry-point group."""
