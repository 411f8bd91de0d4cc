"""What a load allocates beside its executable memory: the BPF verifier's
insn_aux_data (bpf_check()'s vzalloc, vfree()d before the JIT) and the
module loader's copy of the .ko file (vmalloc()ed by the syscall,
vfree()d by free_copy() before the module's init)."""

from __future__ import annotations

from simcore.constants import PAGE
from simcore.kernel.bpf.verifier import BPF_INSN_AUX_SIZE
from simcore.kernel.module import ModuleSpec
from tests.kernel import make_sim, run, spy_vmalloc


def test_the_verifier_vzallocs_one_aux_entry_per_insn_and_frees_it():
    sim = make_sim()
    log = spy_vmalloc(sim)
    prog = run(sim, sim.bpf.prog_load(0, 500))
    assert prog is not None
    aux = [e for e in log if e[1] == "bpf_check"]
    assert [e[0] for e in aux] == ["vmalloc", "vfree"]
    # one struct bpf_insn_aux_data per instruction of the unpatched program
    assert aux[0][2] == (500 // 5) * BPF_INSN_AUX_SIZE
    # freed before the program goes live: only the struct stays
    assert aux[1][3] is aux[0][3]
    assert prog.struct is not aux[0][3]


def test_a_module_load_copies_its_file_into_vmalloc_and_frees_it_before_init():
    sim = make_sim()
    spec = ModuleSpec(
        "m", {"module_text": 3 * PAGE, "module_data": PAGE}, nr_relocs=100, nr_undef=10
    )
    assert spec.file_bytes == 4 * PAGE + 100 * 24 + 10 * 48
    log = spy_vmalloc(sim)
    inits: list = []
    loader = sim.kernel.modules
    orig_init = loader._do_init_module

    def do_init(cpu, mod):
        inits.append(len(log))
        yield from orig_init(cpu, mod)

    loader._do_init_module = do_init
    mod = run(sim, loader.load(0, spec))
    assert mod is not None
    copies = [i for i, e in enumerate(log) if e[1] == "load_module"]
    assert [log[i][0] for i in copies] == ["vmalloc", "vfree"]
    assert log[copies[0]][2] == spec.file_bytes
    # the first allocation of the load, freed before do_init_module()
    assert copies[0] == 0 and copies[1] < inits[0]
