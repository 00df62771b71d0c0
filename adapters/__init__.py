"""Feed adapters: transports (MLLP, HTTP intake, SQL polling) and message-to-FHIR mapping.

Transport and mapping are kept apart: transports move bytes and never read clinical content;
mapping is pure functions from a parsed message and the feed's configuration to a FHIR
transaction Bundle.  The feeds arrive with the integration-layer work (issue 3).
"""
