import Foundation
import TillerEval
import TillerModels
import TillerSteering
import TillerTokenizers

// The items the judge-free, teacher-forced evaluators score for a (model, trait), built once
// (the validation and metrics stages, Stages/, read them).

extension ExperimentRunner {
    /// The judge-free evaluators of (model, trait), or nil when none is configured.
    func teacherForcedEvaluator(_ model: LanguageModel, trait: Trait) throws -> TeacherForcedEvaluator? {
        guard evaluators.contains(where: \.isTeacherForced) else { return nil }
        let key = "\(model.name)\u{1}\(trait.name)"
        if let e = teacherForcedCache[key] { return e }
        let inputs = try teacherForcedInputs(trait)
        let e = try TeacherForcedEvaluator(model: model, references: inputs.references, abItems: inputs.ab,
                                           neutralTexts: inputs.neutral, positions: spec.steerPositions)
        teacherForcedCache[key] = e
        return e
    }

    /// What the judge-free evaluators of a trait score: its first `reference_items` reference
    /// pairs, the A/B items (the file's, or built from those pairs), the first `perplexity_texts`
    /// neutral texts; empty for evaluators that are not configured.
    func teacherForcedInputs(_ trait: Trait) throws -> TeacherForcedInputs {
        let refs = Array(trait.referenceAnswers.prefix(spec.referenceItems ?? .max))
        var ab: [ABItem] = []
        if spec.evaluators.contains(.ab) {
            ab = try spec.abItems.map { try ABItem.load(path: Self.resolve($0, in: baseDirectory)) } ?? ABItem.fromReferences(refs, seed: spec.seed)
        }
        let neutral = spec.evaluators.contains(.perplexity) ? Array(try PromptFile.shippedNeutral().prefix(spec.perplexityTexts)) : []
        return TeacherForcedInputs(references: refs, ab: ab, neutral: neutral)
    }
}
