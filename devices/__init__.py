"""The device profiles (one YAML file per board), shipped in the wheel as edgekit.device_profiles."""
