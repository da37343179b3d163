"""Built-in framework plugins, one folder per framework that needs several files."""
