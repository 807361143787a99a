from .data_manager import DataManager, DatasetWrapper
