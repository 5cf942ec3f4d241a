"""milan-fhir: the Milan criteria for liver transplantation in NET liver metastases, from FHIR R4 data."""
