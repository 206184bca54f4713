"""The model catalogue as data (`catalog.json`, overridable by RHETOR_CATALOG): ids, aliases, context windows,
capabilities, prices and lifecycle status per provider. Knows nothing of providers' code, routing or HTTP."""

from rhetor.catalog.loader import Catalog, load_catalog
from rhetor.catalog.schema import CatalogFile, ModelEntry, Price, ProviderEntry

__all__ = ["Catalog", "CatalogFile", "ModelEntry", "Price", "ProviderEntry", "load_catalog"]
