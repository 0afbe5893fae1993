"""Hospital interoperability: scores as FHIR R4 resources.

Modules: fhir_risk.py (one RiskAssessment per scored patient, validated, written as NDJSON),
fhir_transaction.py (POST them to a FHIR server as one transaction Bundle). See docs/fhir.md.
"""
