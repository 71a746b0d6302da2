"""Pure linear algebra on flat parameter vectors.

Nothing here knows about environments, policies or rewards: every routine takes
vectors, matrices of a few columns, or a matrix-vector callable, and returns a
vector. All solvers are matrix-free; no ``d × d`` matrix is ever formed.

=========================  ==================================  ===============
routine                    solves                              cost
=========================  ==================================  ===============
``sherman_morrison_solve`` ``(λI + u uᵀ)⁻¹ g``                  O(d)
``woodbury_solve``         ``(λI + U Uᵀ)⁻¹ g``, U is d × k      O(kd + k³)
``conjugate_gradient``     ``A x = b`` for a symmetric PD A    O(iters · matvec)
``damped_hvp``             ``v ↦ (∇²f + λI) v`` (Fisher of KL)  one double-backward
=========================  ==================================  ===============
"""

from natpg.curvature.conjugate_gradient import CGResult, conjugate_gradient
from natpg.curvature.hessian import damped_hvp
from natpg.curvature.sherman_morrison import sherman_morrison_solve
from natpg.curvature.woodbury import woodbury_solve

__all__ = [
    "CGResult",
    "conjugate_gradient",
    "damped_hvp",
    "sherman_morrison_solve",
    "woodbury_solve",
]
