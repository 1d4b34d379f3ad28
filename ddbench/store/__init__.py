"""What a run keeps on disk: atomic writes and pickle-free tensor files, distilled sets and the run folder's manifest, resumable units."""
