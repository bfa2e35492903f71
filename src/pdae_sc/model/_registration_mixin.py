"""The model's registration (:class:`RegistrationMixin`) and the checks every query shares."""

from __future__ import annotations

from anndata import AnnData
from scvi import REGISTRY_KEYS

from pdae_sc.data._validation import check_positive_int, check_var_names_match, get_matrix

from ._noise import default_batch_size
from ._registration import RegisteredCells, Registration

__all__ = ["RegistrationMixin"]


class RegistrationMixin:
    """The registration of :class:`~pdae_sc.model.PDAE` and the checks every query shares.

    scvi-tools' ``BaseModelClass`` provides ``adata``, ``adata_manager``,
    ``get_anndata_manager``, ``_validate_anndata``, ``device`` and ``is_trained_``.
    """

    @property
    def registration(self) -> Registration:
        """What :meth:`setup_anndata` recorded for this model (a read-only :class:`Registration`).

        Examples
        --------
        >>> import pdae_sc as pdae
        >>> adata = pdae.data.simulate(n_perturbations=3, n_cells_per_condition=10, seed=0)
        >>> pdae.model.PDAE.setup_anndata(adata, "perturbation", control_group="ctrl")
        >>> model = pdae.model.PDAE(adata)
        >>> model.registration.perturbation_key, model.registration.vocabulary
        ('perturbation', ['P0', 'P1', 'P2'])
        """
        manager = self.adata_manager
        cached = self.__dict__.get("_registration_cache")
        if cached is None or cached._manager is not manager:
            cached = Registration._from_manager(manager)
            self.__dict__["_registration_cache"] = cached
        return cached

    @property
    def perturbations(self) -> list[str]:
        """The elementary perturbations the model knows (columns of ``W``)."""
        return self.registration.vocabulary

    def _cells_of(self, adata: AnnData) -> RegisteredCells:
        """Condition and context codes of ``adata`` (registered), over the model's vocabulary.

        Raises ``ValueError`` if the label columns of ``adata`` changed since registration.
        """
        return self.registration._encode(adata, self.get_anndata_manager(adata, required=True))

    def _matrix(self, adata: AnnData):
        """The registered expression matrix of ``adata`` (``X`` or the registered layer)."""
        return self.get_anndata_manager(adata, required=True).get_from_registry(
            REGISTRY_KEYS.X_KEY
        )

    def _validate(self, adata: AnnData | None) -> AnnData:
        """``adata`` (default the registered one) checked and registered for a query."""
        if adata is None:
            return self._validate_anndata(self.adata)
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        check_var_names_match(self.registration.genes, adata)
        return self._validate_anndata(adata)

    def _query_data(self, adata: AnnData | None, *, labels: bool) -> tuple[AnnData, object]:
        """The AnnData of a query and its registered expression matrix.

        ``labels=False`` (the query reads only expression): an AnnData other than the
        registered one is checked for the training genes only and read from the registered
        layer; its labels (if any) are not read, so it needs no perturbation column.
        """
        if labels or adata is None or adata is self.adata:
            adata = self._validate(adata)
            return adata, self._matrix(adata)
        if not isinstance(adata, AnnData):
            raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
        check_var_names_match(self.registration.genes, adata)
        return adata, get_matrix(adata, self.registration.layer)

    def _check_trained(self) -> None:
        if not self.is_trained_:
            raise RuntimeError("The model is not trained yet; call model.train() first.")

    def _batch_size(self, batch_size: int | None) -> int:
        """Cells per forward pass: ``batch_size``, or the default for this device and data."""
        if batch_size is not None:
            return check_positive_int(batch_size, "batch_size")
        return default_batch_size(len(self.registration.genes), self.device.type)
