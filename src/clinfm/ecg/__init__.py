"""ECG waveforms: WFDB / NumPy records in millivolts, lead selection and PCLR preprocessing."""

from __future__ import annotations
