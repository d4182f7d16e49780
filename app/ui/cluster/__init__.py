"""The cluster view: host groups of GPU tiles with live readings and
sparklines, and adding, importing and trusting hosts."""
