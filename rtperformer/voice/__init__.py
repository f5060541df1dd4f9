"""One instrument's chain, note to sound: roll frames -> model stage (backends/) -> audio stage
(audio_stage.py: magnitude -> phase -> streaming iSTFT) -> gate; the same chain live and offline (chain.py)."""
