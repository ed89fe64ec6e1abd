"""btxcode service: the coder web page, REST API, CDS Hooks, HL7 v2 and the feedback store.

Delivery only: HTTP in, :class:`nlp.engine.Engine` out. The engine never imports from here.
Build the app with :func:`service.main.create_app`.
"""
