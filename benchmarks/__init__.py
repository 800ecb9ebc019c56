"""`make bench`: figures of issue 6, each measured against a floor taken side by side on this machine."""
