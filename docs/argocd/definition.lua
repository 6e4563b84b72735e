-- Argo CD health check for kondukt.io TaskDef and WorkflowDef (resource.customizations.health.kondukt.io_TaskDef,
-- resource.customizations.health.kondukt.io_WorkflowDef), from the Ready and Stalled conditions the operator
-- writes: Ready=True: Healthy; Ready=False (a TaskDef or WorkflowDef it names is missing, or it is invalid):
-- Degraded, the message naming the task reference and what is missing; not checked yet: Progressing.
local hs = {}
local status = obj.status or {}
local generation = (obj.metadata or {}).generation
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the definition"
  return hs
end
local ready = nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the definition"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif ready.status == "False" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
else
  hs.status = "Progressing"
  hs.message = ready.message or ""
end
return hs
