"""Local test fleet: podman containers that boot systemd and answer SSH.

The hosts are built from a Debian image made with mmdebstrap and run with
runc. Everything created here carries the label ``sweep-fleet.fleet=<name>``
and nothing without that label is ever touched.
"""

from .fleet import Fleet, FleetError, Host, build_image, image_tag, require_tools

__all__ = ["Fleet", "FleetError", "Host", "build_image", "image_tag", "require_tools"]
