"""The release side: a release folder from a ``pth_to_hf`` output
(:mod:`.merge`) and the transformers-native export with its remote code
(:mod:`.hf_native`, ``hf_native_code/``)."""
