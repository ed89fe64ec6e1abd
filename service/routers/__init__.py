"""One router per protocol: web page, REST /v1, CDS Hooks, HL7 v2."""
