pytest_plugins = ["support.realm"]
