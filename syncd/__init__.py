"""syncd: watch source trees and stream every change into running containers."""

__version__ = "0.1.0"
