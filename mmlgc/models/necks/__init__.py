from .grouped_fpn import DGCFPN, FLGCFPN, MSGCFPN

__all__ = ['DGCFPN', 'FLGCFPN', 'MSGCFPN']
