"""ovmsctl: the control CLI of the OpenVINO model server daemon (ovmsd)."""

__version__ = "0.1.0"
