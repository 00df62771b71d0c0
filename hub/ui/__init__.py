"""The community office's dashboard at ``/ui``: server-rendered pages, inline SVG charts.

Everything it shows comes from the hub's own tables through ``queries`` (SQL, no HTTP); the
two things it changes (replaying an inbox message, deciding a patient-index review) go through
the same services the API uses.  No asset is fetched from outside the package.
"""
