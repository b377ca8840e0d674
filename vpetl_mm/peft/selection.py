"""Helpers of the methods that select what they tune from the training data (SCT, GPS)."""
import torch
import torch.nn.functional as F
from torch import Tensor


def class_labels(data_samples) -> torch.Tensor:
    """The ``(B,)`` class labels of a batch's data samples (``gt_label`` of each)."""
    labels = []
    for sample in data_samples or ():
        label = getattr(sample, 'gt_label', None)
        if label is None:
            raise TypeError(f'the selection pass needs class labels: {type(sample).__name__} '
                            'has no gt_label (SCT and GPS select from classification data)')
        labels.append(torch.as_tensor(label).reshape(-1)[:1])
    if not labels:
        raise TypeError('the selection pass needs data_samples with gt_label, got none')
    return torch.cat(labels).long()


def supervised_contrastive_loss(features: Tensor, labels: Tensor,
                                temperature: float = 0.07) -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020) of one view per sample.

    Args:
        features: ``(B, D)``, normalised here.
        labels: ``(B,)`` class labels; samples of the same class are positives.

    Returns:
        The mean over anchors with at least one positive of
        ``-mean_p log(exp(z_a.z_p / t) / sum_{k != a} exp(z_a.z_k / t))``; zero (with a
        gradient path) when no anchor has a positive.
    """
    z = F.normalize(features.float(), dim=1)
    logits = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float('-inf'))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    anchors = count > 0
    if not anchors.any():
        return features.sum() * 0
    per_anchor = -(log_prob.masked_fill(~positives, 0).sum(1)[anchors] / count[anchors])
    return per_anchor.mean()
