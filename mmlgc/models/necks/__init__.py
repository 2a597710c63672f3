from .grouped_fpn import DGCFPN, MSGCFPN

__all__ = ['DGCFPN', 'MSGCFPN']
