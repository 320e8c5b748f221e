# SPDX-License-Identifier: MIT
# `joint_recall table --report-only`, end to end on a tiny grid (cmake -P, from the test
# example:joint_recall_table_report_only): one of two cells is trained to done (a few updates on
# the tiny grid, well under a second), then --report-only over both cells must
#   - say that 1 of the 2 runs is done and that it trained nothing,
#   - write table.md with the done cell's number and "—" for the other,
#   - leave the other cell's run folder unmade (nothing trained).
# Inputs: -DJOINT_RECALL=<binary> -DWORK_DIR=<scratch folder>.
file(REMOVE_RECURSE "${WORK_DIR}")
set(tiny --seeds 1 --lrs 3e-3 --steps 2 --warmup 1 --batch 2 --n-min 4 --n-max 4 --train-per 8
         --valid-per 2 --test-per 2 --eval-every 1 --out "${WORK_DIR}")
execute_process(COMMAND "${JOINT_RECALL}" table --bases mamba2 --sparse none ${tiny}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "training the tiny cell failed (${rc}):\n${out}\n${err}")
endif()
execute_process(COMMAND "${JOINT_RECALL}" table --bases mamba2 --sparse none,sliding_window ${tiny}
                        --report-only
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "--report-only failed (${rc}):\n${out}\n${err}")
endif()
if(NOT out MATCHES "from the 1 of 2 runs that are done; trained nothing")
  message(FATAL_ERROR "--report-only did not report 1 of 2 runs done:\n${out}")
endif()
if(EXISTS "${WORK_DIR}/runs/mamba2/sliding_window")
  message(FATAL_ERROR "--report-only made a run folder for the cell it must not train")
endif()
file(READ "${WORK_DIR}/table.md" table)
if(NOT table MATCHES "\\| Mamba2 \\| [0-9]+\\.[0-9] ± [0-9.]+ \\(36\\.6\\) \\| — \\(70\\.6\\) \\|")
  message(FATAL_ERROR "table.md lacks the done cell's number beside \"—\" for the other:\n${table}")
endif()
