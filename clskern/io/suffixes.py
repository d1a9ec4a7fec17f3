"""File-name suffixes of the formats clskern reads (kept apart so pairing imports no reader)."""

NIFTI_SUFFIXES = (".nii.gz", ".nii")
