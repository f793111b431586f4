"""The web layer (kiosk, dashboard, JSON API) and the command line, the composition root."""
