"""Run bookkeeping: what a run is (identity), whether it is done (state), and many runs at once.

Why a package of its own: the engine (``dasslite`` or a real Dassl) runs *one* job; everything
around a job -- its recorded config and fingerprint, the folder lock, the appended log, the
finished-job check, the experiment matrix, the local/SLURM backends and the paper-table report --
is the same whichever engine runs it, so it lives here once.
"""
