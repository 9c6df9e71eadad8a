"""The aarch64 sysroot for the rpi-emu target (see build_sysroot.py)."""
