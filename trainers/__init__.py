"""CLIP few-shot methods, registered in dassl TRAINER_REGISTRY on import."""
