"""Target profiles and the runtime adapters that deploy and profile bundles on devices."""
