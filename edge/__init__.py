"""The appliance's core: data model and store, pickup policy, PINs, tokens, scanner, geofence.

Nothing in here imports a web framework or an HTTP client (see DESIGN.md).
"""
