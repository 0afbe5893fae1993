"""DICOM de-identification by allow-list: the reader copies out only technical attributes.

`ANNEX_E_BASIC_PROFILE_KEYWORDS` lists attributes of the DICOM PS3.15 Annex E Basic Application Level
Confidentiality Profile (Table E.1-1) that occur in radiographs and their exports; a test checks that
nothing ClinFuse keeps from a header is among them, and that planted values of them never reach a file.
Why an allow-list rather than a scrubber: a header can hold private tags and free text anywhere, so copying
out the few attributes preprocessing needs is the only form that cannot leak what it never reads.
"""

from __future__ import annotations

ANNEX_E_BASIC_PROFILE_KEYWORDS: frozenset[str] = frozenset(
    {
        "AccessionNumber", "AcquisitionDate", "AcquisitionDateTime", "AcquisitionTime", "AdmissionID",
        "AdmittingDiagnosesDescription", "AdditionalPatientHistory", "ContentCreatorName", "ContentDate",
        "ContentTime", "ContrastBolusAgent", "CurrentPatientLocation", "DeviceSerialNumber", "DerivationDescription",
        "EthnicGroup", "FrameOfReferenceUID", "ImageComments", "InstitutionAddress", "InstitutionName",
        "InstitutionalDepartmentName", "InstanceCreationDate", "InstanceCreationTime", "IssuerOfPatientID",
        "MedicalRecordLocator", "MilitaryRank", "NameOfPhysiciansReadingStudy", "Occupation", "OperatorsName",
        "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress", "PatientAge",
        "PatientBirthDate", "PatientBirthName", "PatientBirthTime", "PatientComments", "PatientID",
        "PatientMotherBirthName", "PatientName", "PatientReligiousPreference", "PatientSex", "PatientSize",
        "PatientTelephoneNumbers", "PatientWeight", "PerformedProcedureStepDescription",
        "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
        "PerformingPhysicianName", "PhysiciansOfRecord", "ReferencedSOPInstanceUID", "ReferringPhysicianAddress",
        "ReferringPhysicianName", "ReferringPhysicianTelephoneNumbers", "RequestAttributesSequence",
        "RequestingPhysician", "SeriesDate", "SeriesDescription", "SeriesInstanceUID", "SeriesTime",
        "SOPInstanceUID", "StationName", "StudyDate", "StudyDescription", "StudyID", "StudyInstanceUID",
        "StudyTime", "AcquisitionDeviceProcessingDescription", "MediaStorageSOPInstanceUID", "ProtocolName",
    }
)  # fmt: skip

# Attributes that preprocessing reads and that may be written to the cache or reports.
SAFE_IMAGE_KEYWORDS: frozenset[str] = frozenset(
    {
        "SOPClassUID", "Modality", "Rows", "Columns", "NumberOfFrames", "PhotometricInterpretation",
        "BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
        "PixelSpacing", "ImagerPixelSpacing", "BodyPartExamined", "ViewPosition",
    }
)  # fmt: skip
