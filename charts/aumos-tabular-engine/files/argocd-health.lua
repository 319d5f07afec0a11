-- Argo CD health check for tabular.aumos.io/SynthesisJob.
-- Install in argocd-cm (see docs/api.md, "GitOps health"):
--   resource.customizations.health.tabular.aumos.io_SynthesisJob: |
--     <this file>
-- Reads what the operator writes: status.observedGeneration, status.phase, the conditions
-- Ready / Reconciling / Stalled, and status.errorMessage.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the job"
  return hs
end

local status = obj.status
-- A status written for an older spec says nothing about the current one.
if obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

if status.phase == "COMPLETE" then
  hs.status = "Healthy"
  hs.message = "Complete"
  if status.rowsGenerated ~= nil then
    hs.message = "Complete: " .. status.rowsGenerated .. " rows"
  end
  return hs
end

local stalled = condition(status, "Stalled")
if status.phase == "FAILED" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  hs.message = status.errorMessage or (stalled and stalled.message) or "Failed"
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended (spec.suspend)"
  return hs
end

hs.status = "Progressing"
hs.message = (status.phase or "QUEUED")
if status.stage ~= nil then
  hs.message = hs.message .. ": " .. status.stage
end
if status.progress ~= nil then
  hs.message = hs.message .. string.format(" (%d%%)", math.floor(status.progress * 100))
end
return hs
