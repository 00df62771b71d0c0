"""Routing of orders to the regional centres, and of their results back (issue 7).

- ``rules``: which centre receives an order (profiles/routing/rules.json), pure;
- ``endpoints``: members' Endpoints and how the hub reaches each (HL7 v2 or FHIR);
- ``outbound``: FHIR → OML^O21 / ORM^O01 / ORU^R01 with hl7apy, pure; ``fields``: values
  as HL7 v2 fields (escaping, times, the receiver's codes, CX/EI identifiers), pure;
- ``router``: the write observer that routes and cancels orders;
- ``results``: a routed order's result, back to the ordering member;
- ``status``: the routed order's status and Task; ``hooks``: what the outbox and rest-hook
  delivery tell it;
- ``figures``: the office's monthly figures; ``listing``: its list of routed orders.
"""
